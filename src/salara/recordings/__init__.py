"""Call recordings: asking Asterisk's MixMonitor for them, serving and deleting the files it wrote."""
