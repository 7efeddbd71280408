"""The residency policy: where each customer's data must live, and every way a policy is refused.

The policy is the vault's promise in machine-readable form, so a malformed one
must be refused outright (never half-applied), a country it does not list must
have no region at all, and `overt vault policy check` must say in words what
the file means.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from overt.errors import MalformedError
from overt.vault.residency import EU, GROUPS, ResidencyError, ResidencyPolicy
from overt.vault.vault import init_vault

REGIONS = """\
[regions.ch-zurich]
description = "Zurich, Switzerland (supervised)"

[regions.ru-moscow]
description = "Moscow, Russia"
"""

CATEGORIES = """\
[categories.sample]
description = "suspicious files sent for analysis"
retention_days = 365

[categories.telemetry]
retention_days = 30
"""

POLICY = f"""\
{REGIONS}
[countries]
EU = "ch-zurich"
US = "ch-zurich"
CA = "ch-zurich"
AU = "ch-zurich"
RU = "ru-moscow"

{CATEGORIES}"""


MOSCOW_LINE = "Region ru-moscow - Moscow, Russia: holds the data of customers in 1 countries: RU."


def policy_with(countries: str = 'EU = "ch-zurich"\nRU = "ru-moscow"\n', **parts: str) -> str:
    regions = parts.get("regions", REGIONS)
    categories = parts.get("categories", CATEGORIES)
    return f"{regions}\n[countries]\n{countries}\n{categories}"


def refused(text: str) -> str:
    with pytest.raises(MalformedError) as info:
        ResidencyPolicy.parse(text, "test.toml")
    message = str(info.value)
    assert message.startswith("test.toml"), message
    return message


def cli(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"overt crashed: {result.exception!r}\n{result.stderr}")
    return result.exit_code, result.stdout, result.stderr


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --- parsing a good policy ----------------------------------------------------------------


def test_sample_policy_parses_into_regions_countries_and_categories() -> None:
    policy = ResidencyPolicy.parse(POLICY)
    assert set(policy.regions) == {"ch-zurich", "ru-moscow"}
    assert policy.regions["ch-zurich"].description == "Zurich, Switzerland (supervised)"
    assert set(policy.categories) == {"sample", "telemetry"}
    assert policy.categories["sample"].retention_days == 365
    assert policy.categories["telemetry"].retention_days == 30
    assert policy.categories["telemetry"].description == ""
    for country in ("AU", "DE", "US", "CA", "FR", "AT", "IE"):
        assert policy.region_for(country) == "ch-zurich", country
    assert policy.region_for("RU") == "ru-moscow"
    assert policy.category("sample").name == "sample"


def test_retention_defaults_to_365_days_and_accepts_the_bounds() -> None:
    cats = (
        "[categories.a]\n"
        "[categories.b]\nretention_days = 1\n"
        "[categories.c]\nretention_days = 36500\n"
    )
    policy = ResidencyPolicy.parse(policy_with(categories=cats))
    assert [policy.categories[c].retention_days for c in "abc"] == [365, 1, 36500]


def test_eu_group_expands_to_all_member_states_and_nothing_else() -> None:
    policy = ResidencyPolicy.parse(policy_with('EU = "ch-zurich"\n'))
    assert set(policy.countries) == set(EU)
    assert len(EU) == 27
    assert all(policy.source[c] == "EU" for c in EU)
    for outside in ("NO", "IS", "LI", "CH", "GB", "US"):
        with pytest.raises(ResidencyError):
            policy.region_for(outside)


def test_eea_group_is_the_eu_plus_iceland_liechtenstein_norway() -> None:
    policy = ResidencyPolicy.parse(policy_with('EEA = "ch-zurich"\n'))
    assert set(policy.countries) == set(EU) | {"IS", "LI", "NO"}
    assert set(GROUPS["EEA"]) == set(EU) | {"IS", "LI", "NO"}
    assert policy.region_for("NO") == "ch-zurich"
    assert policy.region_for("de") == "ch-zurich"


@pytest.mark.parametrize("order", ["group-first", "country-first"])
def test_a_country_listed_alone_overrides_its_group_in_either_order(order: str) -> None:
    lines = ['EU = "ch-zurich"', 'DE = "ru-moscow"']
    if order == "country-first":
        lines.reverse()
    policy = ResidencyPolicy.parse(policy_with("\n".join(lines) + "\n"))
    assert policy.region_for("DE") == "ru-moscow"
    assert policy.source["DE"] == "DE"
    assert policy.region_for("FR") == "ch-zurich"
    assert policy.source["FR"] == "EU"


def test_overlapping_groups_do_not_depend_on_file_order() -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    ResidencyPolicy.parse() resolves overlapping groups by file order.

    With EU = "ch-zurich" and EEA = "ru-moscow" (both groups contain Germany), the group
    listed *last* wins: `EEA` then `EU` maps DE to ch-zurich, but `EU` then `EEA` maps DE
    to ru-moscow (the groups are sorted with a stable sort on "is a group" only). Expected:
    either refuse the ambiguous policy, or let the narrower group (EU) win whatever the
    order. Was: swapping two lines silently moves every EU customer's data to Moscow.
    """
    outcomes = []
    for text in ('EEA = "ru-moscow"\nEU = "ch-zurich"\n', 'EU = "ch-zurich"\nEEA = "ru-moscow"\n'):
        try:
            policy = ResidencyPolicy.parse(policy_with(text))
        except MalformedError:
            outcomes.append("refused")
            continue
        assert policy.region_for("NO") == "ru-moscow"
        outcomes.append(policy.region_for("DE"))
    assert outcomes in (["refused", "refused"], ["ch-zurich", "ch-zurich"]), outcomes


def test_country_alone_overrides_both_groups() -> None:
    policy = ResidencyPolicy.parse(
        policy_with('EEA = "ch-zurich"\nEU = "ch-zurich"\nNO = "ru-moscow"\n')
    )
    assert policy.region_for("NO") == "ru-moscow"
    assert policy.region_for("IS") == "ch-zurich"


# --- region_for and category --------------------------------------------------------------


@pytest.mark.parametrize("country", ["de", " DE ", "De", "DE\n"])
def test_region_for_normalises_case_and_whitespace(country: str) -> None:
    assert ResidencyPolicy.parse(POLICY).region_for(country) == "ch-zurich"


@pytest.mark.parametrize("country", ["CN", "GB", "CH", "XX", "ZZ"])
def test_region_for_an_unlisted_country_is_refused_never_defaulted(country: str) -> None:
    with pytest.raises(ResidencyError, match=f"no region holds data of customers in {country}"):
        ResidencyPolicy.parse(POLICY).region_for(country)


@pytest.mark.parametrize("country", ["", "D", "DEU", "D1", "12", "E-", "ÄÖ", "🇩🇪", "EU/", "D E"])
def test_region_for_an_invalid_code_is_refused(country: str) -> None:
    with pytest.raises(ResidencyError, match="not an ISO 3166-1 alpha-2 code"):
        ResidencyPolicy.parse(POLICY).region_for(country)


def test_group_names_are_not_countries() -> None:
    policy = ResidencyPolicy.parse(POLICY)
    for group in ("EU", "EEA"):
        with pytest.raises(ResidencyError):
            policy.region_for(group)


def test_unknown_category_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ResidencyError, match=r"unknown data category 'logs'.*sample, telemetry"):
        ResidencyPolicy.parse(POLICY).category("logs")


def test_residency_error_is_malformed_input() -> None:
    assert issubclass(ResidencyError, MalformedError)


# --- every refusal ------------------------------------------------------------------------


def test_refuses_invalid_toml() -> None:
    refused("[regions.ch-zurich\n")


@pytest.mark.parametrize("table", ["region", "country", "Categories", "settings"])
def test_refuses_unknown_tables(table: str) -> None:
    assert f"unknown table(s) {table}" in refused(POLICY + f"\n[{table}]\nx = 1\n")


def test_refuses_unknown_top_level_keys() -> None:
    assert "unknown table(s) default" in refused('default = "ch-zurich"\n' + POLICY)


@pytest.mark.parametrize(
    "name", ["CH-Zurich", "-zurich", "ch_zurich", "ch zurich", "zürich", "a" * 64, "ch.zurich"]
)
def test_refuses_bad_region_names(name: str) -> None:
    text = f'[regions."{name}"]\n' + policy_with('RU = "ru-moscow"\n')
    assert "region name" in refused(text)


def test_accepts_edge_region_names() -> None:
    name = "a" + "-9" * 31  # 63 characters, the longest allowed
    text = f'[regions."{name}"]\n[regions.x]\n[countries]\nDE = "{name}"\n' + CATEGORIES
    policy = ResidencyPolicy.parse(text)
    assert policy.region_for("DE") == name
    assert policy.regions["x"].description == ""


def test_refuses_a_policy_without_regions() -> None:
    assert "at least one region" in refused(f"[countries]\n{CATEGORIES}")
    assert "at least one region" in refused(f"[regions]\n[countries]\n{CATEGORIES}")


def test_refuses_regions_that_are_not_tables() -> None:
    assert "[regions] must be a table" in refused('regions = "ch-zurich"\n' + CATEGORIES)
    assert "[regions.ch-zurich] must be a table" in refused(
        '[regions]\nch-zurich = "Zurich"\n' + CATEGORIES
    )


@pytest.mark.parametrize(
    "entry", ['DE = "de-frankfurt"', 'EU = "us-east"', 'RU = "Ru-Moscow"', "DE = 5", "DE = true"]
)
def test_refuses_countries_naming_unknown_regions(entry: str) -> None:
    assert "names unknown region" in refused(policy_with(entry + "\n"))


def test_refuses_a_country_mapped_to_a_table() -> None:
    text = REGIONS + "[countries.DE]\nregion = 'ch-zurich'\n" + CATEGORIES
    assert "names unknown region" in refused(text)


@pytest.mark.parametrize("code", ["de", "DEU", "D", "D1", "12", "E-", "eu", "Eu", "EUR", "EFTA"])
def test_refuses_invalid_country_codes(code: str) -> None:
    message = refused(policy_with(f'"{code}" = "ch-zurich"\n'))
    assert "not an ISO 3166-1 alpha-2 code or a group (EU, EEA)" in message


def test_refuses_countries_that_are_not_a_table() -> None:
    text = 'countries = "ch-zurich"\n' + REGIONS + CATEGORIES
    assert "[countries] must be a table" in refused(text)


@pytest.mark.parametrize("name", ["Sample", "1sample", "-x", "sam ple", "_x", "a" * 64, "daten✓"])
def test_refuses_bad_category_names(name: str) -> None:
    cats = f'[categories."{name}"]\nretention_days = 30\n'
    assert "category name" in refused(policy_with(categories=cats))


@pytest.mark.parametrize("days", ["0", "-1", "36501", '"30"', "true", "30.5", "[30]", "1e3"])
def test_refuses_bad_retention(days: str) -> None:
    cats = f"[categories.sample]\nretention_days = {days}\n"
    assert "categories.sample.retention_days: 1 to 36500" in refused(policy_with(categories=cats))


def test_refuses_a_policy_without_categories() -> None:
    assert "at least one data category" in refused(policy_with(categories=""))


def test_refuses_categories_that_are_not_tables() -> None:
    assert "[categories.sample] must be a table" in refused(
        policy_with(categories='[categories]\nsample = "files"\n')
    )
    assert "[categories] must be a table" in refused(
        "categories = 3\n" + policy_with(categories="")
    )


def test_load_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MalformedError, match="no residency policy"):
        ResidencyPolicy.load(tmp_path / "residency.toml")


def test_load_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(POLICY, encoding="utf-8")
    assert ResidencyPolicy.load(good).region_for("AU") == "ch-zurich"
    bad = tmp_path / "bad.toml"
    bad.write_text(POLICY.replace('RU = "ru-moscow"', 'RU = "ru-novosibirsk"'), encoding="utf-8")
    with pytest.raises(MalformedError, match=re.escape(str(bad))):
        ResidencyPolicy.load(bad)


# --- explain() ----------------------------------------------------------------------------


def test_explain_names_each_region_its_countries_groups_and_the_categories() -> None:
    lines = ResidencyPolicy.parse(POLICY).explain()
    assert len(lines) == 2 + 1 + 2
    zurich, moscow, others, sample, telemetry = lines
    assert zurich.startswith("Region ch-zurich - Zurich, Switzerland (supervised): ")
    assert "holds the data of customers in 30 countries (including all of EU)" in zurich
    listed = zurich.rsplit(": ", 1)[1].rstrip(".").split(", ")
    assert listed == sorted([*EU, "US", "CA", "AU"])
    assert (
        moscow
        == "Region ru-moscow - Moscow, Russia: holds the data of customers in 1 countries: RU."
    )
    assert "any other country are refused" in others
    assert "never stored anywhere" in others
    assert sample == "Category sample (suspicious files sent for analysis): kept for 365 days."
    assert telemetry == "Category telemetry: kept for 30 days."


def test_explain_a_region_without_countries_says_none() -> None:
    text = REGIONS + "[regions.us-east]\n[countries]\nRU = 'ru-moscow'\n" + CATEGORIES
    lines = ResidencyPolicy.parse(text).explain()
    assert "Region us-east: holds the data of customers in 0 countries: none." in lines
    assert any(line.startswith("Region ch-zurich - Zurich") and "none" in line for line in lines)


def test_explain_shows_a_country_that_overrides_its_group_under_its_own_region() -> None:
    lines = ResidencyPolicy.parse(policy_with('EU = "ch-zurich"\nDE = "ru-moscow"\n')).explain()
    zurich = next(line for line in lines if line.startswith("Region ch-zurich"))
    moscow = next(line for line in lines if line.startswith("Region ru-moscow"))
    assert "26 countries" in zurich
    assert "DE" not in zurich.split(": ", 2)[2].split(", ")
    assert moscow.endswith("1 countries: DE.")


def test_explain_does_not_claim_a_whole_group_when_a_member_is_elsewhere() -> None:
    """Regression: a bug this test found, fixed in src while the tests were written.

    ResidencyPolicy.explain() says "(including all of EU)" for a region even when a
    country listed alone moves an EU member elsewhere.

    Policy: EU = "ch-zurich", DE = "ru-moscow". Expected: the ch-zurich line does not claim
    "all of EU" (Germany's data goes to Moscow). Was: "Region ch-zurich ...: holds the data
    of customers in 26 countries (including all of EU): AT, BE, ...", a false residency
    statement in the text `overt vault policy check` shows to customers and supervisors.
    """
    lines = ResidencyPolicy.parse(policy_with('EU = "ch-zurich"\nDE = "ru-moscow"\n')).explain()
    zurich = next(line for line in lines if line.startswith("Region ch-zurich"))
    assert "all of EU" not in zurich, zurich


# --- the CLI ------------------------------------------------------------------------------


def test_policy_check_explains_a_file_and_a_vault(tmp_path: Path) -> None:
    policy_file = tmp_path / "residency.toml"
    policy_file.write_text(POLICY, encoding="utf-8")
    code, out, err = cli("vault", "policy", "check", policy_file)
    assert code == 0, err
    text = flat(out)
    assert "Region ch-zurich - Zurich, Switzerland (supervised): holds the data" in text
    assert "30 countries (including all of EU)" in text
    assert (
        "Region ru-moscow - Moscow, Russia: holds the data of customers in 1 countries: RU." in text
    )
    assert "Category telemetry: kept for 30 days." in text
    vault = tmp_path / "vault"
    init_vault(vault, POLICY, "test.example/residency")
    code, out2, err = cli("vault", "policy", "check", vault)
    assert code == 0, err
    assert flat(out2) == text


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (POLICY + "\n[extra]\n", "unknown table(s) extra"),
        (POLICY.replace('RU = "ru-moscow"', 'RU = "ru-omsk"'), "names unknown region 'ru-omsk'"),
        (POLICY.replace("US =", "usa ="), "not an ISO 3166-1 alpha-2 code"),
        (POLICY.replace("retention_days = 30", "retention_days = 0"), "1 to 36500"),
        ("not toml at all [", "bad.toml"),
    ],
)
def test_policy_check_refuses_a_bad_policy_with_exit_2(
    tmp_path: Path, content: str, expect: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    code, out, err = cli("vault", "policy", "check", path)
    assert code == 2
    assert expect in flat(err)
    assert "Region" not in out


def test_policy_check_of_a_missing_file_or_empty_directory_is_exit_2(tmp_path: Path) -> None:
    code, _, err = cli("vault", "policy", "check", tmp_path / "nope.toml")
    assert code == 2 and "no residency policy" in flat(err)
    code, _, err = cli("vault", "policy", "check", tmp_path)
    assert code == 2 and "no residency policy" in flat(err)


def test_vault_init_refuses_a_bad_policy_and_creates_nothing(tmp_path: Path) -> None:
    policy_file = tmp_path / "p.toml"
    policy_file.write_text(POLICY.replace("EU =", "E1 ="), encoding="utf-8")
    vault = tmp_path / "vault"
    code, _, err = cli("vault", "init", vault, "--policy", policy_file, "--origin", "t.example/v")
    assert code == 2, err
    assert "E1" in err
    assert not (vault / "residency.toml").exists()
    assert not (vault / "secrets").exists()
