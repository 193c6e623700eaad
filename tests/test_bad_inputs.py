"""Every bad input in the catalogue (tests/bad_inputs.py) ends the same way: exit code 2,
exactly one line on stderr, starting ``oasa: error:``, no traceback, and no file written.
The command runs in-process, as a user's shell would run it, with the current folder set
to a scratch folder so that nothing lands in the checkout."""

import pytest
from bad_inputs import CASES, listing, make_fixtures

from oasa.cli import main


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("bad_inputs"))


def test_the_catalogue_is_broad():
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 60 and len(kinds) >= 8
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_and_exit_2(case, fixtures, capsys, monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    root = Path(fixtures["root"])
    before = listing(root)
    rc = main(case.command(fixtures))
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert rc == 2, f"exit {rc}; stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith("oasa: error: "), err
    assert "Traceback" not in err + out
    assert listing(root) == before, "a refused command left files behind"
    assert listing(tmp_path) == set()
