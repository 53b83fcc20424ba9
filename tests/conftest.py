"""Test tiers: the Hypothesis profiles every test run loads.

``HYPOTHESIS_PROFILE`` chooses the profile:

* ``dev`` (the default): quick, for the edit-and-run loop; each property test runs the number
  of examples written on it.
* ``ci`` (set by .ci/run): heavier, five times as many examples for every property test
  (those that give their count through :func:`tests.factories.examples`, and the default of
  those that give none).

Neither profile has a deadline: a shared machine must not turn a slow example into a failure
(speed is measured in bench/, never asserted in tests).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("ci", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
