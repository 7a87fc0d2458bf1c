"""udeploy-docker-run: a udeploy provider written outside udeploy, registered as `docker-run` in the
`udeploy.providers` entry-point group. It imports only udeploy's provider protocol
(`udeploy.engine.provider_api`), its errors and the value types of `udeploy.engine.load`."""

from udeploy_docker_run.provider import DockerRunProvider

__all__ = ["DockerRunProvider"]
