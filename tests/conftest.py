import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (tests/data/test_properties.py): a fixed budget from a fixed seed in `make test` (the same
# inputs every run, well inside a minute here), and many fresh ones with HYPOTHESIS_PROFILE=long before a release.
settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO = Path(__file__).resolve().parents[1]
PUBLIC = Path(os.environ.get("PMLM_PUBLIC_DATA", REPO.parent / "shared" / "data" / "public"))


def needs_public_data(*parts):
    """Skip, with the reason, when ../shared/data/public (or the file) is absent."""
    path = PUBLIC.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"public data not found at {path} (clone beside ../shared)")


@pytest.fixture(scope="session")
def small_cohort():
    from pmlm_lib.data import synthetic

    return synthetic.generate(n_patients=250, seed=3)


@pytest.fixture(scope="session")
def default_cohort():
    from pmlm_lib.data.sources import synthetic_cohort

    return synthetic_cohort(seed=0, n_patients=2373, raw=False)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The whole report on the smoke profile, run once for the pipeline and browser tests:
    (reports folder, run folder, what the console showed)."""
    import io

    from pmlm_lib.workbench.pipeline import run_report

    reports = tmp_path_factory.mktemp("reports")
    console = io.StringIO()
    run_dir = run_report(profile="smoke", run="smoke", reports_dir=reports, console=console)
    return reports, run_dir, console.getvalue()


@pytest.fixture(scope="session")
def smoke_reports(smoke_run):
    return smoke_run[0]
