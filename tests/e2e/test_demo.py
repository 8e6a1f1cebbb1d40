from localdev import demo


def test_demo_scenario_passes(capsys):
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "every check passed" in out
    assert "FAILED" not in out
