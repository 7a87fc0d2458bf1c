"""Issue 9: untrusted pull-request content is never executed, never believed, never a crash."""
