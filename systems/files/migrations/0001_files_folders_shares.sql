-- The record of the file platform: folders, files, variants, groups and grants. Objects live in the buckets;
-- a file row exists only once its object is complete (the upload writes the object, then inserts the row).

CREATE TABLE folders (
    id          uuid PRIMARY KEY,
    parent_id   uuid REFERENCES folders (id),
    owner_id    text NOT NULL,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX folders_parent ON folders (parent_id);
CREATE INDEX folders_owner ON folders (owner_id) WHERE parent_id IS NULL;

CREATE TABLE files (
    id            uuid PRIMARY KEY,
    folder_id     uuid REFERENCES folders (id),
    owner_id      text NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    tags          text[] NOT NULL DEFAULT '{}',
    content_type  text NOT NULL,
    size          bigint NOT NULL CHECK (size >= 0),
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    object_key    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Trash: a deleted file keeps its row and object until the retention has passed (then both go).
    deleted_at    timestamptz,
    deleted_by    text
);
CREATE INDEX files_folder ON files (folder_id) WHERE deleted_at IS NULL;
CREATE INDEX files_owner ON files (owner_id);
CREATE INDEX files_trash ON files (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE variants (
    file_id       uuid NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    name          text NOT NULL,
    object_key    text NOT NULL,
    content_type  text NOT NULL,
    size          bigint NOT NULL,
    width         int NOT NULL,
    height        int NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, name)
);

CREATE TABLE groups (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    owner_id    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE group_members (
    group_id    uuid NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id     text NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- One grant per resource and principal: sharing again changes the role, revoking deletes the row.
CREATE TABLE grants (
    resource_type   text NOT NULL CHECK (resource_type IN ('file', 'folder')),
    resource_id     uuid NOT NULL,
    principal_type  text NOT NULL CHECK (principal_type IN ('user', 'group')),
    principal_id    text NOT NULL,
    role            text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    granted_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (resource_type, resource_id, principal_type, principal_id)
);
CREATE INDEX grants_principal ON grants (principal_type, principal_id);

-- Roles as numbers so "at least editor" is a comparison: 0 none, 1 viewer, 2 editor, 3 owner.
CREATE FUNCTION role_rank(r text) RETURNS int IMMUTABLE LANGUAGE sql AS $$
    SELECT CASE r WHEN 'owner' THEN 3 WHEN 'editor' THEN 2 WHEN 'viewer' THEN 1 ELSE 0 END
$$;

-- The caller's role on a folder: owning it or any folder above it, or a grant (to the user or one of the
-- user's groups) on it or any folder above it. Every service asks Postgres this one question, in the same
-- transaction snapshot as the data, so a revoked grant is gone for the very next request.
CREATE FUNCTION folder_rank(p_user text, p_folder uuid) RETURNS int STABLE LANGUAGE sql AS $$
    WITH RECURSIVE chain (id, parent_id, owner_id, depth) AS (
        SELECT id, parent_id, owner_id, 0 FROM folders WHERE id = p_folder
        UNION ALL
        SELECT f.id, f.parent_id, f.owner_id, c.depth + 1 FROM folders f JOIN chain c ON f.id = c.parent_id
        WHERE c.depth < 64
    )
    SELECT COALESCE(max(r), 0) FROM (
        SELECT 3 AS r FROM chain WHERE owner_id = p_user
        UNION ALL
        SELECT role_rank(g.role) FROM grants g JOIN chain c ON g.resource_type = 'folder' AND g.resource_id = c.id
        WHERE (g.principal_type = 'user' AND g.principal_id = p_user)
           OR (g.principal_type = 'group'
               AND g.principal_id IN (SELECT m.group_id::text FROM group_members m WHERE m.user_id = p_user))
    ) ranks
$$;

-- The caller's role on a file: owner, a grant on the file, or the role on its folder (inherited).
CREATE FUNCTION file_rank(p_user text, p_file uuid) RETURNS int STABLE LANGUAGE sql AS $$
    SELECT GREATEST(
        COALESCE((SELECT CASE WHEN f.owner_id = p_user THEN 3 ELSE 0 END FROM files f WHERE f.id = p_file), 0),
        COALESCE((SELECT max(role_rank(g.role)) FROM grants g
                  WHERE g.resource_type = 'file' AND g.resource_id = p_file
                    AND ((g.principal_type = 'user' AND g.principal_id = p_user)
                      OR (g.principal_type = 'group' AND g.principal_id IN
                          (SELECT m.group_id::text FROM group_members m WHERE m.user_id = p_user)))), 0),
        COALESCE((SELECT folder_rank(p_user, f.folder_id) FROM files f
                  WHERE f.id = p_file AND f.folder_id IS NOT NULL), 0))
$$;
