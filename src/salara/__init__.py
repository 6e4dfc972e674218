"""salara: connects an Asterisk PBX to a CRM over AMI and FastAGI."""

__version__ = "0.1.0"
