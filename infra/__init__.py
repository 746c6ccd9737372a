"""Deployment: container image, KubeRay / cluster-launcher manifests, their offline validation (see RUNBOOK.md)."""
