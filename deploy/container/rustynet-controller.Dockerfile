# The controller's image: FROM scratch around the static binary, run as an
# unprivileged user whose state directory (the store, the CA and its key)
# is a volume. Built by `make images` from the repository root (the
# context .dockerignore keeps to bin/ and deploy/container/).
#
#   docker run -d -p 8443:8443 -v rustynet-controller:/var/lib/rustynet-controller \
#     rustynet-controller serve --data-dir /var/lib/rustynet-controller --tls-san controller.example.net
FROM scratch
COPY bin/rustynet-controller /usr/local/bin/rustynet-controller
COPY --chown=65532:65532 deploy/container/data/ /var/lib/rustynet-controller/
USER 65532:65532
VOLUME ["/var/lib/rustynet-controller"]
EXPOSE 8443 9469
ENTRYPOINT ["/usr/local/bin/rustynet-controller"]
CMD ["serve", "--data-dir", "/var/lib/rustynet-controller", "--listen", ":8443", "--metrics-listen", ":9469"]
