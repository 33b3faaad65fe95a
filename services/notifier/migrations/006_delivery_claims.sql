-- A delivery being sent. The scheduler claims a due one in a short transaction of its own and sends it
-- with no transaction open, so a slow channel holds no connection (decision 015). Until `claimed_until`
-- (the database's real clock, whatever the services' clock says) other replicas leave the row alone;
-- after it, a claim whose holder died is taken over and the notice sent again. `claim` is the
-- holder's token: an outcome is recorded only while the claim is still its own.
ALTER TABLE deliveries ADD COLUMN claim uuid, ADD COLUMN claimed_until timestamptz;
