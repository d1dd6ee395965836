# tester.tcl -- test procedures for logstor's SQL tests, after SQLite's
# test/tester.tcl (same names and meaning, for plain tclsh + the sqlite3
# package).
#
#   do_test NAME SCRIPT EXPECTED      EXPECTED: exact, /regexp/ or *glob*
#   do_execsql_test ?-db DB? NAME SQL ?RESULT?
#   do_catchsql_test ?-db DB? NAME SQL RESULT     RESULT: {0 rows} or {1 message}
#   do_eqp_test NAME SQL PATTERN      PATTERN must appear in the query plan
#   execsql SQL ?DB?   catchsql SQL ?DB?
#   reset_db           a fresh test.db (and data directory) with logstor loaded
#   load_logstor DB    enable extension loading and load logstor.so into DB
#   finish_test        prints "N passed, N failed" and exits
#
# Every test file runs in its own tclsh process with its own temporary
# directory (the current directory while it runs), removed at the end.
# Environment: LOGSTOR_BUILD (build directory holding logstor.so).

package require sqlite3

set ::T(pass) 0
set ::T(fail) 0
set ::T(faillist) {}
if {![info exists ::testprefix]} { set ::testprefix "" }

set ::testdir [file dirname [file normalize [info script]]]
if {[info exists ::env(LOGSTOR_BUILD)]} {
  set ::LOGSTOR_SO [file join $::env(LOGSTOR_BUILD) logstor]
} else {
  set ::LOGSTOR_SO [file join [file dirname $::testdir] logstor]
}

# A private working directory.
set ::tmpbase [expr {[info exists ::env(TMPDIR)] ? $::env(TMPDIR) : "/tmp"}]
set ::workdir [file join $::tmpbase "logstor-tcl-[pid]-[file rootname [file tail $argv0]]"]
file delete -force $::workdir
file mkdir $::workdir
cd $::workdir

proc load_logstor {db} {
  $db enable_load_extension 1
  $db eval { SELECT load_extension($::LOGSTOR_SO) }
}

proc forcedelete {args} {
  foreach f $args { file delete -force $f }
}

# Close db, delete test.db and everything beside it, open and load again.
proc reset_db {} {
  catch {db close}
  foreach f [glob -nocomplain test.db test.db-*] { file delete -force $f }
  sqlite3 db test.db
  load_logstor db
}

proc fix_testname {varname} {
  upvar $varname name
  if {$::testprefix ne "" && [string is digit [string index $name 0]]} {
    set name "$::testprefix-$name"
  }
}

proc do_test {name cmd expected} {
  fix_testname name
  if {[catch {uplevel #0 $cmd} result]} {
    set ok 0
    set result "ERROR: $result"
  } elseif {[regexp {^/.*/$} $expected]} {
    set ok [regexp -- [string range $expected 1 end-1] $result]
  } elseif {[regexp {^\*.*\*$} $expected]} {
    set ok [string match $expected $result]
  } else {
    set ok [expr {[string compare $result $expected] == 0}]
  }
  if {$ok} {
    incr ::T(pass)
  } else {
    incr ::T(fail)
    lappend ::T(faillist) $name
    puts "! $name expected: \[$expected\]"
    puts "! $name got:      \[$result\]"
  }
}

proc execsql {sql {db db}} { uplevel #0 [list $db eval $sql] }

proc catchsql {sql {db db}} {
  set rc [catch {uplevel #0 [list $db eval $sql]} msg]
  list $rc $msg
}

proc do_execsql_test {args} {
  set db db
  if {[lindex $args 0] eq "-db"} { set db [lindex $args 1]; set args [lrange $args 2 end] }
  lassign $args name sql res
  fix_testname name
  uplevel [list do_test $name [list execsql $sql $db] [list {*}$res]]
}

proc do_catchsql_test {args} {
  set db db
  if {[lindex $args 0] eq "-db"} { set db [lindex $args 1]; set args [lrange $args 2 end] }
  lassign $args name sql res
  fix_testname name
  uplevel [list do_test $name [list catchsql $sql $db] $res]
}

proc eqp {sql {db db}} {
  set r {}
  $db eval "EXPLAIN QUERY PLAN $sql" x { lappend r $x(detail) }
  join $r "\n"
}

proc do_eqp_test {name sql res} {
  fix_testname name
  uplevel [list do_test $name [list eqp $sql] "*$res*"]
}

# Error code of the last failure on db.  tclsqlite 3.40 reports the
# primary code (19 for every constraint failure), not the extended one.
proc errcode {{db db}} { $db errorcode }

proc finish_test {} {
  catch {db close}
  foreach c [info commands db*] { catch {$c close} }
  cd $::tmpbase
  if {![info exists ::env(LOGSTOR_KEEP_TMP)]} { file delete -force $::workdir }
  if {[llength $::T(faillist)]} { puts "Failures: $::T(faillist)" }
  puts "$::T(pass) passed, $::T(fail) failed"
  exit [expr {$::T(fail) ? 1 : 0}]
}
