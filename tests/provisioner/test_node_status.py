"""How a multi-node replica's state follows from its nodes' (node_status, pure): a table."""

from __future__ import annotations

import pytest

from services.provisioner.clouds.base import InstanceState, InstanceStatus
from services.provisioner.clouds.node_status import aggregate_nodes

S = InstanceState
RUN, PROV = InstanceStatus(state=S.RUNNING), InstanceStatus(state=S.PROVISIONING, detail="GCP status STAGING")
GONE = InstanceStatus(state=S.NOT_FOUND, detail="no such VM")
EXIT = InstanceStatus(state=S.EXITED, exit_code=3, detail="the VM stopped")
PRE = InstanceStatus(state=S.PREEMPTED, detail="spot VM preempted")
DEL = InstanceStatus(state=S.TERMINATED, detail="being deleted")

CASES = [
    # (head, workers...), state, text the detail contains ("" for none)
    ((RUN, RUN, RUN), S.RUNNING, ""),
    ((RUN, PROV, RUN), S.PROVISIONING, "node 1 of 3 (n1): GCP status STAGING"),
    ((PROV, RUN), S.PROVISIONING, "node 0 of 2 (n0)"),
    ((RUN, RUN, PRE), S.PREEMPTED, "node 2 of 3 (n2): spot VM preempted"),
    ((GONE, PRE), S.PREEMPTED, "node 1 of 2"),  # preemption says more than a gone head
    ((PRE, GONE), S.PREEMPTED, "node 0 of 2"),
    ((GONE, RUN), S.NOT_FOUND, "node 0 of 2 (n0): no such VM"),
    ((DEL, DEL), S.TERMINATED, "node 0 of 2"),
    ((RUN, DEL), S.TERMINATED, "node 1 of 2"),
    ((RUN, GONE, RUN), S.EXITED, "node 1 of 3 (n1): the node is gone (no such VM)"),
    ((RUN, RUN, EXIT), S.EXITED, "node 2 of 3 (n2): the VM stopped"),
    ((PROV, EXIT), S.EXITED, "node 1 of 2"),  # a failed worker fails a replica still starting
    ((EXIT, RUN), S.EXITED, "node 0 of 2"),
]


@pytest.mark.parametrize(("nodes", "state", "text"), CASES)
def test_aggregate(nodes: tuple[InstanceStatus, ...], state: InstanceState, text: str) -> None:
    status = aggregate_nodes([(f"n{rank}", s) for rank, s in enumerate(nodes)])
    assert status.state == state
    assert text in status.detail
    if text == "":
        assert status.detail == ""


def test_the_failing_nodes_exit_code_is_kept_and_one_node_is_itself() -> None:
    assert aggregate_nodes([("n0", RUN), ("n1", EXIT)]).exit_code == 3
    assert aggregate_nodes([("n0", EXIT)]) == EXIT
    with pytest.raises(ValueError):
        aggregate_nodes([])
