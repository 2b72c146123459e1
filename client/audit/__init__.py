"""The client side of the audit log.

``checkpoints`` (checked on every login: the log only grows), ``keys`` (the audit key's designation
and publication), ``log`` (reading and verifying the events, witnessing), ``report`` (the protocols
report and a member's exposure), ``incidents`` (the Security Team's private incident records). This
package imports nothing itself: ``checkpoints`` sits below the client's view, the others above
``client.client``.
"""
