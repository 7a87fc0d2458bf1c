"""JSON Schemas (draft 2020-12) shipped as package data: deploy.json v1/v2, config.json, CI.json
and the plan file."""
