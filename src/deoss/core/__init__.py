"""The pure data path: encoding, keys, hashing, erasure coding, layout and PoDR².

Nothing in this package touches the network, the clock, randomness of its own or the disk
(except through file objects handed in by the caller).
"""
