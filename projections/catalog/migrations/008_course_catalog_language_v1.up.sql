-- A course requested with course.generation.requested v1, which has no
-- language, is in "en" (v2's default, which the upcaster fills in); the
-- catalog left language NULL for it when the runtime did not upcast. A
-- row with a request and no language had only v1 requests (v2 requires
-- a language), so it is set here; a row no request reached (a course
-- seen only through its distributions) keeps NULL. A course whose later
-- attempt was requested with v1 after a v2 attempt kept the earlier
-- attempt's language: only a rebuild (eventstream replay catalog)
-- recomputes those.
UPDATE course_catalog SET language = 'en' WHERE language IS NULL AND requested_at IS NOT NULL;
