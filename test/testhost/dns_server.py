"""A small authoritative DNS server for the test host (UDP): answers A queries
for the names given on the command line (NAME=IPV4 ...), NXDOMAIN for any other
name, and logs each query so a test can tell the answer came from here. Tests
never query an outside resolver; pods that name this server in their DNS config
resolve the test names through it, over slirp4netns."""
import socket
import struct
import sys

addr, port = sys.argv[1], int(sys.argv[2])
records = {}
for arg in sys.argv[3:]:
    name, ip = arg.split("=", 1)
    records[name.rstrip(".").lower()] = socket.inet_aton(ip)

srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind((addr, port))


def qname(packet: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        n = packet[offset]
        offset += 1
        if n == 0:
            return ".".join(labels), offset
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[offset : offset + n].decode("ascii", "replace"))
        offset += n


def answer(packet: bytes) -> bytes | None:
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    name, end = qname(packet, 12)
    qtype, qclass = struct.unpack("!HH", packet[end : end + 4])
    question = packet[12 : end + 4]
    ip = records.get(name.lower())
    rd = flags & 0x0100
    if ip is None:
        # NXDOMAIN, authoritative
        return struct.pack("!HHHHHH", ident, 0x8403 | rd, 1, 0, 0, 0) + question
    if qtype != 1 or qclass != 1:
        # The name exists, without records of this type: NOERROR, no answer.
        return struct.pack("!HHHHHH", ident, 0x8400 | rd, 1, 0, 0, 0) + question
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + ip
    return struct.pack("!HHHHHH", ident, 0x8400 | rd, 1, 1, 0, 0) + question + record


while True:
    data, peer = srv.recvfrom(4096)
    try:
        reply = answer(data)
    except (ValueError, IndexError, struct.error):
        reply = None
    if reply is not None:
        srv.sendto(reply, peer)
        print(f"query from {peer[0]}: {qname(data, 12)[0]}", flush=True)
