"""TCP server for the test host: answers each connection with one line naming
itself and the address the connection came from, then closes it."""
import socket
import sys
import threading

addr, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(64)


def serve(conn: socket.socket, peer: tuple) -> None:
    with conn:
        conn.sendall(f"usernode-testhost from {peer[0]}\n".encode())


while True:
    c, p = srv.accept()
    threading.Thread(target=serve, args=(c, p), daemon=True).start()
