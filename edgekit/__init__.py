"""edgekit: take a trained model to Raspberry Pis and Android phones, and measure how it behaves there.

The pipeline is recipe -> convert -> artifacts -> deploy (transport) -> agent on device -> results -> store
-> report; see README.md and docs/design.md.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
