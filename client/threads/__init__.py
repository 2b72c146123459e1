"""Team threads on the client.

``team`` (``Threads``: one team's threads: create, post, read, list, follow live, every message
checked), ``cache`` (what was accepted, kept encrypted per team), ``info`` (who created a thread and
its expiry: the creator's choice, shown with every message). The package imports nothing itself.
"""
