"""Item-level edits of s_0: whole peer lines and the prediction sentence, never a cut inside them."""

import pandas as pd
import pytest

from pmlm_lib.data.prompts import coarse_prompt
from pmlm_lib.method.refine.items import PromptItems, describe, items_for

PEERS = (("uterine scar", 0.93), ("normal", 0.90), ("uterine scar", 0.81), ("placenta previa", 0.71))


def test_items_rebuild_s0_and_each_edit_is_a_well_formed_prompt():
    items = PromptItems("uterine scar", PEERS[:3], PEERS[3:])
    assert items.prompt() == coarse_prompt("uterine scar", list(PEERS[:3]))
    dropped = items.drop_peers([2])
    assert dropped.prompt() == coarse_prompt("uterine scar", [PEERS[0], PEERS[2]])
    assert describe(items, dropped) == "dropped peer 2: normal, 0.90"
    assert items.disagreeing_ranks() == [2] and items.ranks_below(0.85) == [3]
    assert items.drop_peers(items.disagreeing_ranks()).peers == (PEERS[0], PEERS[2])
    assert items.without_prediction().prompt() == coarse_prompt(None, list(PEERS[:3]))
    assert "dropped the prediction sentence (uterine scar)" in describe(items, items.without_prediction())
    swapped = items.swap_peer(2)
    assert swapped.peers == (PEERS[0], PEERS[2], PEERS[3]) and swapped.pool == ()
    assert "brought in peer placenta previa, 0.71" in describe(items, swapped)
    with pytest.raises(ValueError, match="peers_saved"):
        swapped.swap_peer(1)
    # no prediction: no peer agrees with it
    assert PromptItems(None, PEERS[:2]).disagreeing_ranks() == [1, 2]


def test_items_are_read_from_notebook_03s_peer_table_with_the_pool_past_k():
    peers = pd.DataFrame(
        [
            {"patient_id": "A", "rank": r, "peer_id": f"T{r}", "peer_label": label, "similarity": sim}
            for r, (label, sim) in enumerate(PEERS, start=1)
        ]
    ).sample(frac=1, random_state=0)  # any order
    items = items_for(pd.Series({"A": "normal"}), peers, k=2)["A"]
    assert items.peers == PEERS[:2] and items.pool == PEERS[2:] and items.prediction == "normal"
    assert items.prompt() == coarse_prompt("normal", list(PEERS[:2]))
