"""Tests of `udeploy validate`: manifest rules D1-D5, E2, object schemas and the dry-run."""
