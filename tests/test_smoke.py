"""End-to-end through the CLI with the real exportfs: the main job in a few cycles."""

from __future__ import annotations

from conftest import Lab


def test_apply_then_no_change_then_confirmed_removal(lab: Lab) -> None:
    lab.add_project("tools", 50380)
    lab.add_instance("i-1", "tools", "172.16.0.5")
    lab.add_instance("i-2", "tools", "172.16.0.6")
    home = lab.srv("tools", "home")
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, "172.16.0.5"), (home, "172.16.0.6")}
    lab.remove_instance("i-2")
    for _ in range(2):
        assert lab.cli("sync") == 3  # pending-confirmation
        assert (home, "172.16.0.6") in lab.in_force()
    assert lab.cli("sync") == 0
    assert lab.in_force() == {(home, "172.16.0.5")}
