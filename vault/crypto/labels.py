"""Every label and domain tag we use, namespaced and versioned.

Signing tags are prefixed to the canonical bytes (``tag || 0x00 || bytes``); KDF labels are
the message of a keyed BLAKE2b whose key is the parent secret.
"""

from __future__ import annotations

# Signature domain tags (one per object type).
SIG_AUTH = b"mvault/v1/auth"
SIG_MEMBER_LINK = b"mvault/v1/member-link"
SIG_ORG_LINK = b"mvault/v1/org-link"
SIG_TEAM_LINK = b"mvault/v1/team-link"
SIG_INVITE = b"mvault/v1/invite-proof"
SIG_INVITE_HOLDER = b"mvault/v1/invite-holder"
SIG_DEVICE_PROOF = b"mvault/v1/device-proof"
SIG_DOC = b"mvault/v1/doc"
SIG_MSG = b"mvault/v1/msg"
SIG_CHECKPOINT = b"mvault/v1/checkpoint"
SIG_ACCESS = b"mvault/v1/access"
SIG_COALITION = b"mvault/v1/coalition"  # an ally's coalition key signs coalition.admit / coalition.remove

# Key derivation labels.
KDF_PUK_SIGN = b"mvault/v1/puk/sign"
KDF_PUK_BOX = b"mvault/v1/puk/box"
KDF_PUK_SECRETBOX = b"mvault/v1/puk/secretbox"
KDF_TEAM_DOC = b"mvault/v1/team/doc-key"
KDF_TEAM_MSG = b"mvault/v1/team/msg-key"
KDF_TEAM_NAME = b"mvault/v1/team/name-key"
KDF_TEAM_CANARY = b"mvault/v1/team/canary"
KDF_TEAM_HISTORY = b"mvault/v1/team/history"
KDF_DATA_STREAM = b"mvault/v1/doc/stream-key"  # body format 1 (secretstream)
KDF_DATA_FRAMES = b"mvault/v1/doc/body2-frame-key"  # body format 2 (ChaCha20-Poly1305 STREAM)
KDF_DATA_META = b"mvault/v1/doc/meta-key"
KDF_DATA_COMMIT = b"mvault/v1/doc/key-commit"
KDF_INVITE_SIGN = b"mvault/v1/invite/sign"
KDF_SESSION = b"mvault/v1/client/session"
KDF_PAPER_SIGN = b"mvault/v1/paper/sign"
KDF_PAPER_BOX = b"mvault/v1/paper/box"
KDF_LINK_SLOT = b"mvault/v1/device-link/slot"
KDF_LINK_KEY = b"mvault/v1/device-link/key"

# AEAD associated-data prefixes.
AD_DOC_WRAP = b"mvault/v1/doc/wrap"
AD_DOC_META = b"mvault/v1/doc/meta"
AD_KEYSTORE = b"mvault/v1/keystore"
AD_SESSION = b"mvault/v1/client/session"
AD_PUK_PREV = b"mvault/v1/puk/prev"
AD_TEAM_PREV = b"mvault/v1/team/prev"
AD_DEVICE_LINK = b"mvault/v1/device-link"

# Hash domain labels.
H_LINK = b"mvault/v1/link-hash"
H_DOC_NAME = b"mvault/v1/doc/name"
H_MEMBER_ID = b"mvault/v1/member-id"
H_ORG_ID = b"mvault/v1/org-id"
H_TEAM_ID = b"mvault/v1/team-id"
H_DEVICE_ID = b"mvault/v1/device-id"
H_BOX = b"mvault/v1/box-hash"
H_VERSION = b"mvault/v1/doc/version-id"
H_TOKEN = b"mvault/v1/session-token"
H_SAFETY = b"mvault/v1/safety-number"
H_KEYS = b"mvault/v1/member-keys"
H_ROSTER = b"mvault/v1/team-roster"  # the member list a team.review confirms
H_COALITION = b"mvault/v1/coalition-statement"  # the hash a space records of each coalition statement used
H_CLOSE_PLAN = b"mvault/v1/close-plan"  # the hand-over plan an org.close.propose fixes (vault/chains/closing.py)

# Audit log (security/events.py).
SIG_COSIGN = b"mvault/v1/checkpoint-cosign"
SIG_AUDIT_KEY = b"mvault/v1/audit-key"
SIG_ATTEST = b"mvault/v1/attestation"
SIG_RESTORE = b"mvault/v1/restore-acceptance"  # the Security Team accepts a restored server (security/restore.py)
SIG_TIMELINE = b"mvault/v1/timeline"  # a Security Team device signs a timeline evidence bundle
SIG_ROSTER = b"mvault/v1/roster-export"  # the record of a roster export, naming its readers (vault/roster.py)
SIG_COALITION_ACT = b"mvault/v1/coalition-act"  # a record of an act in a coalition space (vault/coalitionact.py)
AD_ROSTER = b"mvault/v1/roster"  # the roster export's body (vault/roster.py)
KDF_AUDIT_SEAL = b"mvault/v1/audit/seal-key"
KDF_AUDIT_SLOT = b"mvault/v1/audit/slot-key"
KDF_SOURCE_TAG = b"mvault/v1/server/source-tag"  # keys the tags of source addresses kept in the database
KDF_NOTICE = b"mvault/v1/server/notice-key"  # keys the tags of notices carrying records between processes
AD_AUDIT_SLOT = b"mvault/v1/audit/slot"
AD_AUDIT_EVENT = b"mvault/v1/audit/event"

# Team threads (vault/messages.py).
SIG_THREAD = b"mvault/v1/thread"
KDF_THREAD_NAME = b"mvault/v1/thread/name-key"
KDF_MSG_BODY = b"mvault/v1/msg/body-key"
AD_THREAD_NAME = b"mvault/v1/thread/name"
AD_MSG = b"mvault/v1/msg"
H_THREAD_ID = b"mvault/v1/thread/id"
H_MSG = b"mvault/v1/msg/id"
H_THREAD_REF = b"mvault/v1/thread/ref"

# Local state at rest (client caches: thread messages, unread counts).
KDF_LOCAL = b"mvault/v1/local/cache-key"
AD_LOCAL = b"mvault/v1/local/cache"
KDF_LOCAL_NAME = b"mvault/v1/local/file-name"
