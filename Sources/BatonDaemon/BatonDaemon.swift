// batond roles.
