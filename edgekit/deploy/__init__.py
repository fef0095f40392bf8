"""`edgekit deploy`: convert, push to each target, run the timing agent, pull results, compare with the host.

    from edgekit.deploy import deploy, DeployOptions
    result = deploy(load_recipe("recipes/tiny.yaml"), ["pi4-emu"], DeployOptions(repeat=5))

Modules: request (what the agent is sent, the device layout), session (one target's stages), agent_run (the
agent run and its failures), agent_result (its result files and stream read), run_recorder (what the runs
leave in the TargetRun), host_cpu (the host-CPU lock), outputs (every target's outputs judged), provenance
(tool versions, git revision, time), plan (each target's options, cap and inputs), run_targets (every target
at once, one thread each, Ctrl-C), orchestrate (all targets, estimates, routes, the DeployResult).
"""

from edgekit.deploy.orchestrate import HOST, deploy, host_target, is_ok
from edgekit.deploy.plan import DeployOptions
from edgekit.deploy.request import AgentArtifact, Settings
from edgekit.deploy.session import HostCpu, TargetSession

__all__ = [
    "HOST",
    "AgentArtifact",
    "DeployOptions",
    "HostCpu",
    "Settings",
    "TargetSession",
    "deploy",
    "host_target",
    "is_ok",
]
