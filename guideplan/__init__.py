"""guideplan: planning workstation for CT-guided percutaneous treatment of bone metastases."""

__version__ = "0.1.0"
