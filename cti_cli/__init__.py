"""cti: an Asterisk AMI to Service Desk CTI connector."""

__version__ = "0.1.0"
