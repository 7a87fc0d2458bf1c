"""History and rollback, on top of the job records: which commits each service ran, verified, and
when (`records`), and a rollback that goes through git, never around it: a `deploy.json` pin
(`pin_text`, editing the text in place) committed on a new branch of the operator's checkout
(`branch`) for review, under the same policy a plan applies (`rollback`). Nothing here applies.
"""
