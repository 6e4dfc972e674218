"""The project's test PBX (Asterisk in a Debian sid chroot, plus a SIP phone)."""
