"""The web UI: ``studio`` holds the workflow, ``app`` serves it as one page."""
