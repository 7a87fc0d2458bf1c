"""udeploy: declarative plan/apply for service deployments.

The one import name the distribution installs. The project's top-level folders are its
subpackages: `udeploy.engine` (engine/), `udeploy.providers` (providers/) and `udeploy.schemas`
(schemas/). In a checkout they are reached through the symlinks in this folder; an installed
wheel holds the real files here, so nothing generic such as `engine` lands in site-packages.
"""
