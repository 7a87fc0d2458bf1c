"""Everything that touches the world: git, the OCI registry, Compose hosts (local or over SSH)
and native k3s (kubeconfig + containerd). Each provider is looked up by name through the
`udeploy.providers` entry-point group, so a new one needs no engine change."""
