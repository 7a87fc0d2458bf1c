"""CI producer side: publish the artifact of a pinned commit (C1) and report which pinned commits
have artifacts (S1).
"""
