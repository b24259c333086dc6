#!/bin/bash
# The entrypoint of the PostgreSQL stand-in image (deploy/docker/base-images):
# the official postgres image's contract, in short.
#
#   POSTGRES_USER      the superuser made at initdb (default postgres)
#   POSTGRES_PASSWORD  its password; required unless
#                      POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_DB        a database made at initdb (default: POSTGRES_USER)
#   PGDATA             where the cluster lives (default /var/lib/postgresql/data)
#   POSTGRES_HOST_AUTH_METHOD  auth of network clients (default scram-sha-256)
#
# On the first start (no PG_VERSION in PGDATA) it runs initdb there, makes the
# database, and lets network clients in with a password; then, and on every
# start, it becomes the postgres user and execs postgres listening on all
# addresses, so `docker stop` reaches postgres itself (the image's STOPSIGNAL
# is SIGINT, PostgreSQL's fast shutdown, as in the official image: SIGTERM's
# "smart" shutdown would wait for every client to disconnect).
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA

# `docker run image -c foo=bar` means postgres -c foo=bar.
if [[ ${1:-} == -* ]]; then
    set -- postgres "$@"
fi

if [[ ${1:-} != postgres ]]; then
    exec "$@"
fi

if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    if [[ -z ${POSTGRES_PASSWORD:-} && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
        echo "postgres: set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    echo "postgres: initdb in $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-unused}" >"$pwfile"
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" >/dev/null
    rm -f "$pwfile"
    {
        echo
        echo "# network clients (docker-entrypoint.sh)"
        echo "host all all all $POSTGRES_HOST_AUTH_METHOD"
    } >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"

    # Make the database with a server that only the socket reaches.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [[ $POSTGRES_DB != postgres ]]; then
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
            --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >/dev/null
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres: initdb done"
fi

exec "$@"
