# The node daemon's image: FROM scratch around the static binary. A node
# makes its TUN device, addresses and routes, so it runs with
# CAP_NET_ADMIN and /dev/net/tun (or with --netstack, no privilege at
# all); its keys and credential are a volume. Built by `make images`.
#
#   docker run -d --cap-add NET_ADMIN --device /dev/net/tun -v rustynet:/var/lib/rustynet \
#     -v /etc/rustynet/ca.pem:/etc/rustynet/ca.pem:ro rustynetd \
#     --state-dir /var/lib/rustynet --controller https://controller.example.net:8443 \
#     --controller-ca /etc/rustynet/ca.pem --auth-key-file /run/secrets/authkey
FROM scratch
COPY bin/rustynetd /usr/local/bin/rustynetd
COPY deploy/container/data/ /var/lib/rustynet/
VOLUME ["/var/lib/rustynet"]
ENTRYPOINT ["/usr/local/bin/rustynetd"]
CMD ["--state-dir", "/var/lib/rustynet"]
