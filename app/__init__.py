"""The application around the constructs: values files, secrets, checks and the summary
(main.py runs it; the constructs in constructs/ do not depend on it)."""
