"""Ray Serve: thin deployments over the stage services, the ingress, and the app builder."""
