-- List columns. The position (U) in the cabinet is a list column (shown, sorted and exported beside the
-- cabinet), kept like the other business columns in assets and in every asset version; filled
-- here from the business fields already stored.
ALTER TABLE assets ADD COLUMN cabinet_u BIGINT;
ALTER TABLE asset_versions ADD COLUMN cabinet_u BIGINT;
UPDATE assets a SET cabinet_u = (s.fields::jsonb ->> 'cabinet_u')::bigint
FROM asset_sections s WHERE s.asset_id = a.id AND s.section = 'business' AND s.fields::jsonb ? 'cabinet_u';
UPDATE asset_versions SET cabinet_u = (state::jsonb #>> '{sections,business,fields,cabinet_u}')::bigint
WHERE state::jsonb #>> '{sections,business,fields,cabinet_u}' IS NOT NULL;

-- The search also finds an asset by its owner, IDC and cabinet: they become search terms (new
-- writes add them; these statements add them for what is stored).
INSERT INTO search_terms (term, asset_id)
SELECT DISTINCT LOWER(TRIM(value)), id FROM (
    SELECT id, owner AS value FROM assets UNION ALL
    SELECT id, idc FROM assets UNION ALL
    SELECT id, cabinet FROM assets
) v WHERE value IS NOT NULL AND TRIM(value) <> '' AND LENGTH(TRIM(value)) <= 200
ON CONFLICT DO NOTHING;
UPDATE asset_versions SET terms = terms
    || CASE WHEN owner IS NOT NULL AND TRIM(owner) <> '' THEN chr(10) || LOWER(TRIM(owner)) ELSE '' END
    || CASE WHEN idc IS NOT NULL AND TRIM(idc) <> '' THEN chr(10) || LOWER(TRIM(idc)) ELSE '' END
    || CASE WHEN cabinet IS NOT NULL AND TRIM(cabinet) <> '' THEN chr(10) || LOWER(TRIM(cabinet)) ELSE '' END;
