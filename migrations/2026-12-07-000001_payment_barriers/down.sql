DROP TABLE payment_barriers;
