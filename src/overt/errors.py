"""The error types every part of Overt raises.

Two families matter to callers: input that cannot be parsed is *malformed*
(exit code 2 on the command line, HTTP 400), and well-formed input that fails a
cryptographic or policy check is *unverified* (exit code 1, HTTP 403/422).
Security decisions never rely on any other exception escaping: parsers convert
every failure into one of these.
"""


class OvertError(Exception):
    """Base class of all errors Overt raises on purpose."""


class MalformedError(OvertError, ValueError):
    """The input does not follow the format it claims to be in."""


class VerificationError(OvertError):
    """The input is well formed but a signature, proof or policy check failed."""


class KeyFileError(OvertError):
    """A key file could not be read or written as requested."""
