"""Build the image: plan (``plan``), tiers (``tiers``), exact commits (``exact``), execute
(``execute``), rebuild a recorded version (``rebuild``); the Containerfile parser
(``containerfile``) and the generated Containerfile (``benchfile``), download mirrors
(``downloads``) and CA certificates (``cacerts``). ``records`` types what they write to disk.

Nothing is imported here, so ``imagekit --help`` and the deploy wing do not load the build wing.
"""
