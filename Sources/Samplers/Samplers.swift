// Schedulers and seeded noise; see the files of this module.
