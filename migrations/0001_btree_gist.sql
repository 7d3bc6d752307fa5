-- btree_gist lets a GiST index compare plain scalar columns with `=`, which the overlap rule of
-- 0003 needs: "same user (=) and overlapping span (&&)". It is a trusted extension since
-- PostgreSQL 13, so the database owner may create it without superuser rights.
CREATE EXTENSION IF NOT EXISTS btree_gist;
