"""Transparency centre: the source of a logged release, what changed since the last review,
and signed, logged review statements (docs/review.md).

- `overt.review.release`: read a release's provenance from the log (verified against the
  log key and the trusted conveyor keys) and export the exact source tree it names, checked
  against the recorded digest;
- `overt.review.delta`: the files added, removed and changed since an earlier release;
- `overt.review.statement`: the review predicate (`https://overt.dev/review/v1`) and the
  reviewer's findings file.
"""
