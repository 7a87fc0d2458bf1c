"""Checks that read and judge, and change nothing: `validate` (the k3s manifest rules D1-D4 and E2
in `manifest_rules`, the D5 db guard and the API dry run through providers), `live` (`udeploy
check`: live against desired, with the runtime checks E3 and E5 in `runtime_checks`).
"""
