"""The SMTP front door: aiosmtpd server and handler (thin; asks policy, hands to intake)."""
