-- What a routed number says when it answers, before the caller speaks (in the route's language).
ALTER TABLE phone_routes ADD COLUMN greeting text;
