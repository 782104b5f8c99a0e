"""The Qt vetting window. Core (`rbvet.core`) never imports this package."""
