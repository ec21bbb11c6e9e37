"""Reusable CDK constructs, one concept per module, each driven by the typed spec model.

They are composed into stacks by :mod:`stackwright.render.aws.stacks`; each can also be used on its own
in a hand-written CDK app.
"""
