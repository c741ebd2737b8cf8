"""The line's web layer: Flask blueprints that turn requests into calls on the rules and back into TwiML or HTML.

calls.py (the phone line, /voice...), texts.py (the text line, /sms), staff.py (the staff page, /staff),
errors.py (the fallback URL and the catch-all error answer), health.py (/healthz).
"""
