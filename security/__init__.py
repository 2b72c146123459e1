"""Role/permission policy, and (later) the Merkle audit log and protocol rules."""
