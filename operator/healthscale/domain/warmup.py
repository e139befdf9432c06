"""Node warm-up: room reserved ahead of the replicas a plan will need once new nodes are up.

A replica asked for when the cluster has no room waits for a node (Karpenter, cluster-autoscaler)
before it even starts, so the planner's lookahead (startup plus one cycle) is too short there.
With ``Policy.node_provisioning_seconds`` set, the same planner is asked again with that much more
lookahead: what it would ask for then, beyond what it asks for now, is the room to reserve now
(as placeholder pods that real replicas preempt). The reservation shrinks as real replicas take
the room and is zero once the need has passed, so no node is held past need.

Pure: the inputs and the decision of this cycle in, a ``Reservation`` out.
"""

from __future__ import annotations

import dataclasses

from healthscale.domain import planning


@dataclasses.dataclass(frozen=True)
class Reservation:
    """Room for ``replicas`` more replicas than this cycle asks for, and why."""

    replicas: int
    """Replicas' worth of room to hold now (0: none)."""
    needed: int
    """The most replicas the plan needs within ``reach_seconds``, capped at maxReplicas."""
    asked: int
    """The replicas this cycle asks for."""
    reach_seconds: int
    """How far ahead ``needed`` looks: node provisioning, startup and one cycle."""
    detail: str
    """What ``needed`` comes from (the winning proposal of the longer plan), or why nothing is reserved."""

    def explanation(self) -> str:
        if self.reach_seconds == 0:
            return self.detail
        within = f"{self.needed} needed within {self.reach_seconds // 60}m ({self.detail}), {self.asked} asked for now"
        if self.replicas == 0:
            return f"no room reserved: {within}"
        return f"room reserved for {self.replicas} more replicas: {within}"


OFF = "no room reserved: nodeProvisioningSeconds is 0"


def reserve(policy: planning.Policy, inputs: planning.Inputs, decision: planning.Decision,
            held: int = 0) -> Reservation:
    """The room to hold at ``inputs.now`` beyond ``decision``'s replicas.

    ``inputs`` must carry the forecast and the surges for ``policy.reach`` (not only the lookahead).
    The longer plan starts from a fresh memory: only its proposals matter, never its guards. ``held``
    is the room held now: without a forecast, or on stale data, it is not given up (as the planner
    holds replicas), because what the longer plan cannot see is no evidence that the need has passed.
    """
    if policy.node_provisioning_seconds <= 0:
        return Reservation(0, decision.desired_replicas, decision.desired_replicas, 0, OFF)
    longer = dataclasses.replace(policy, startup_seconds=policy.startup_seconds + policy.node_provisioning_seconds)
    later, _ = planning.plan(longer, inputs)
    needed = later.recommended
    replicas = max(0, needed - decision.desired_replicas)
    detail = f"{later.reason}: {later.winner.detail}"
    unsure = later.no_forecast or inputs.stale
    if unsure is not None and held > replicas:
        replicas = held
        detail += f"; room for {held} held: {unsure.reason}"
    return Reservation(replicas=replicas, needed=needed, asked=decision.desired_replicas,
                       reach_seconds=longer.lookahead, detail=detail)
