"""Notifications that carry nothing: "new message", told late, to a device or a webhook.

An inbox's owner may register a Web Push subscription and/or a webhook URL
(targets.py, sealed at rest with keys.py). Storing a message only marks its inbox
due at a random minute within the owner's chosen delay (queue.py); a background
sender (worker.py, in `secretlink serve` or `secretlink notify`) claims due inboxes,
one worker each, and delivers the owner's neutral text (delivery.py) to addresses
it has checked are globally routable (addresses.py). docs/THREAT-MODEL.md says what
the push service and the webhook's host learn.
"""
